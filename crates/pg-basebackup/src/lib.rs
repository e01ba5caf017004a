//! Sans-IO decoder of a `BASE_BACKUP` response (work in progress).
