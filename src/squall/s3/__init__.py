"""S3: the API (api, ops, http, xml, post), its errors, the object store (store/) and bucket notifications."""
