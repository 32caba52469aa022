"""Lambda Cloud, the `lambda` plugin (the package is `lambdalabs`: `lambda` is a keyword)."""
