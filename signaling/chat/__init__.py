"""Chat: one room per pair of users, the /chat namespace and its REST routes."""
