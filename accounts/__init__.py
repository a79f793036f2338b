"""Accounts: shopper sign-up and login; partner API tokens (DRF authtoken, managed in admin)."""
