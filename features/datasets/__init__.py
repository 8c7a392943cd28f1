"""Public datasets converted to the Parquet contract, and the synthetic Douyin-style generator."""
