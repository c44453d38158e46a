"""deploy/: the image, compose, Kubernetes and PgBouncer files, checked without Docker."""
