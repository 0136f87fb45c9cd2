"""The LlamaParse v2 client: upload, jobs, results, resumption, and the wake-up signal of its webhook."""
