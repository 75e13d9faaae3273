"""Use cases: small classes built from ports; each checks the calling subject's permission first."""
