pytest_plugins = ["tests.support.smtp_servers", "tests.support.db_fixtures", "tests.support.fault_smtp",
                  "tests.support.pg_proxy"]
