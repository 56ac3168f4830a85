"""Function URLs and HTTP routes: the Lambda API and serving (``api``), the HTTP <-> Lambda event mapping
(``events``) and their persistence (``store``)."""
