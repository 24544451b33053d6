"""The `flashsale` subcommands, one Typer app or command per module."""
