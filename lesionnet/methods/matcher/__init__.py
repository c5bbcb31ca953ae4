"""The parameter-free matcher: weighted NCC of the template lesion + the registration prior, no weights."""
