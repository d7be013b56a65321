"""What the service records and monitoring reads: the request-log schema (one writer, one reader), the monitoring
reference and its statistics."""
