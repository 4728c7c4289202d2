"""The views, one module per kind of page: `pages` (reads), `actions` (one task or item), `poll`,
`operations` (bulk) and `webhook`. Every URL pattern is in `catalog/urls.py`.

Every view checks its permission itself (fragments included: a fragment URL can be requested directly).
"""
