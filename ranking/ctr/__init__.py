"""CTR ranking: the model (embedding bags -> history encoder -> over arch -> one logit per label) and its metrics."""
