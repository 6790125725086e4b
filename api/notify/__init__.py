"""Notifications (issue 19 item 3): rules a user sets through the API (rules.py, router.py),
events read from the store as an outbox (events.py), channels (channels.py: signed webhooks,
Telegram, email), the delivery log and one dispatcher per API process (dispatcher.py), tables in
store.py (migration 0015)."""
