"""Raw dataset format: schema and validation, dataset id resolution, image I/O, synthetic data, converters."""
