"""SQS: the API (api, shapes), its errors and the queue store (store/)."""
