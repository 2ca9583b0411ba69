"""The cost and deployment of a sampled architecture: parameters and FLOPs (flops), the compact model
(export), and step timings (benchmark, benchmark_speed)."""
