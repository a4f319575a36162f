"""Task data: GLUE in the classic TSV layout, and the GLUE metrics."""
