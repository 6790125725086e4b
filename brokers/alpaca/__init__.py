"""Alpaca (alpaca-py): the adapter (adapter.py), its mapping (mapping.py) and the data feed
(feed.py). Importing this package does not import alpaca-py; the adapter imports it on use."""
