//! Throwaway PostgreSQL databases for tests (this crate's and the end-to-end tests): each
//! test creates its own `nodeproof_test_<random>` on the server `NODEPROOF_TEST_PG` names
//! and drops it when the guard goes. Without the variable the tests say they were not run
//! and why, never pass silently; in CI (`CI` set) a missing variable fails them.

use std::fmt;

use postgres::NoTls;
use rand::Rng as _;

/// The variable naming the server: `postgres://postgres@127.0.0.1:5432/test`.
pub const ENV: &str = "NODEPROOF_TEST_PG";

/// A database created for one test, dropped (connections and all) on drop.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestDatabase {
    /// A new empty database, or `None` (after saying so on stderr) when `NODEPROOF_TEST_PG`
    /// is not set outside CI. Panics when the server cannot be used: a configured test
    /// server that does not answer is a broken test setup, not a skipped test.
    pub fn create(test: &str) -> Option<TestDatabase> {
        let Ok(admin_url) = std::env::var(ENV) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: {ENV} is not set but CI is: the PostgreSQL tests must run in CI \
                 (.ci/run sets {ENV}=postgres://postgres@127.0.0.1:5432/test)"
            );
            eprintln!(
                "{test}: PostgreSQL tests not run: set \
                 {ENV}=postgres://postgres@127.0.0.1:5432/test"
            );
            return None;
        };
        Some(TestDatabase::create_on(&admin_url, "nodeproof_test", test))
    }

    /// A new empty database named `<prefix>_<random>` on the server `admin_url` names
    /// (its database is only used to create and drop the new one). Panics when the
    /// server cannot be used.
    pub fn create_on(admin_url: &str, prefix: &str, what: &str) -> TestDatabase {
        let admin_url = admin_url.to_owned();
        let name = format!("{prefix}_{:016x}", rand::thread_rng().gen::<u64>());
        let mut admin = admin(&admin_url);
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("{what}: cannot create database {name}: {e}"));
        // The same server and user, the new database.
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) if server.contains("://") && server.len() > "postgres://".len() => {
                format!("{server}/{name}")
            }
            _ => panic!("{what}: {admin_url:?} must end in /database"),
        };
        TestDatabase {
            admin_url,
            name,
            url,
        }
    }

    /// The database's URL, for `--db` or `store::open`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A plain client on the database (for checks the store does not offer).
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.name))
    }

    /// Ends every connection to the database except the caller's (what an operator's
    /// `pg_terminate_backend`, or a server restart, does to the collectors); returns how
    /// many were ended.
    pub fn terminate_connections(&self) -> u64 {
        let mut admin = admin(&self.admin_url);
        let rows = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .unwrap_or_else(|e| panic!("pg_terminate_backend: {e}"));
        rows.len() as u64
    }
}

impl TestDatabase {
    /// Lets clients connect to the database again (`true`) or refuses every new connection
    /// (`false`, what a server that is down or restarting looks like to the collector).
    pub fn set_accepting(&self, accepting: bool) {
        let mut admin = admin(&self.admin_url);
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {accepting}",
                self.name
            ))
            .unwrap_or_else(|e| panic!("ALTER DATABASE ... ALLOW_CONNECTIONS: {e}"));
    }
}

fn admin(url: &str) -> postgres::Client {
    postgres::Client::connect(url, NoTls).unwrap_or_else(|e| {
        panic!(
            "{ENV}={url:?} is set but PostgreSQL cannot be used there ({e}): start it, or \
             unset {ENV} to skip the PostgreSQL tests"
        )
    })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // On a thread of its own: the sync client panics inside an async context, and a
        // test may drop this from one.
        let dropped = std::thread::spawn(move || {
            let mut admin = postgres::Client::connect(&url, NoTls)?;
            admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("could not drop test database {}", self.name),
        }
    }
}
