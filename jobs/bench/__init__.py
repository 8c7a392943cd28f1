"""The benchmarks: quality (every tower and ablation), next-item (the paper's table), speed."""
