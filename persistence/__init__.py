"""Records, store contracts and their backends. Imports no other project package."""
