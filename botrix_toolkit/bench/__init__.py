"""The benchmarks behind ``botrix bench``: every figure beside a raw baseline of the same run."""
