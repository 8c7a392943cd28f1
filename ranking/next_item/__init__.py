"""Next-item recommendation: the tower as a user encoder scored against the item table, and its metrics."""
