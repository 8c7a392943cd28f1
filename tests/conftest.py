"""Test-wide settings: one torch thread per test process (the CI machine has two cores and a test's
numbers must not depend on another process's load)."""

import torch

torch.set_num_threads(1)
