"""Web Push with VAPID (docs/push.md): subscriptions, the sender, its queue."""
