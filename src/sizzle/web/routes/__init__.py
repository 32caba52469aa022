"""Page routes, one module per area."""

from sizzle.web.routes import (
    account,
    account_access,
    admin,
    admin_audit,
    admin_purchases,
    attachments,
    chats,
    keys,
    launch,
    notifications,
    plans,
    public,
    sessions,
    ssh_keys,
)

PAGE_MODULES = (
    public,
    account_access,
    launch,
    plans,
    chats,  # before sessions: its /sessions/{id}/chat would match sessions' catch-all
    sessions,
    attachments,
    account,
    keys,
    ssh_keys,
    notifications,
    admin,
    admin_audit,
    admin_purchases,
)
