"""Claims: batches of insurer invoices sent as XML files, the insurer's answer, rejected lines."""
