"""The object store: buckets, objects, multipart uploads and notification configurations on disk."""
