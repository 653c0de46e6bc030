"""The staff directory: the LDAP client (search, bind with the password policy, failover), the
password policy control, the embedded slapd and directory administration. No HTTP; it uses the
packages below it (``translatable`` for its messages) and nothing of the web service."""
