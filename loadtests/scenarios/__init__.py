"""One locustfile per scenario; each also exports skus(), seed() and verdict() for the runner."""

NAMES = ("flash_sale", "purchase_limit", "restock_mid_sale", "multi_sku_carts", "backorder")
