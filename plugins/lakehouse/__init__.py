"""eCommerce lakehouse: the shared code of the batch and streaming DAGs."""
