"""Page routes, one module per area."""

from sizzle.web.routes import account, admin, admin_purchases, launch, public, sessions

PAGE_MODULES = (public, launch, sessions, account, admin, admin_purchases)
