"""Per scenario: skus(), seed() and verdict(). Free of Locust (which gevent-patches whatever
imports it), so the runner and the tests can use them; the locustfiles import them."""
