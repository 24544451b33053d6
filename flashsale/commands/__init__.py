"""One module per `flashsale` subcommand (or group); flashsale/cli.py registers them."""
