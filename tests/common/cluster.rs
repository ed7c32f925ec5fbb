//! Several Pulse instances as one, for the cluster tests: each on one
//! PostgreSQL database (from the shared throwaway cluster) and one test
//! Redis, with the same token secret and a chat rate no test runs into.

use super::postgres::shared;
use super::redis::Redis;
use super::TestServer;

/// The token secret every instance of a test shares (a token minted on one
/// is good on the others).
pub const SECRET: &str = "one-secret-for-every-instance-0123456789abcdef";

/// `count` instances on one fresh database and `redis`, with `flags`.
pub async fn instances(redis: &Redis, count: usize, flags: &[&str]) -> Vec<TestServer> {
    let url = shared().create_database();
    let mut servers = Vec::new();
    for _ in 0..count {
        servers.push(instance(&url, redis, flags).await);
    }
    servers
}

/// One instance on the database at `url` and `redis`, with `flags`.
pub async fn instance(url: &str, redis: &Redis, flags: &[&str]) -> TestServer {
    let redis_url = redis.url();
    let mut all = super::shared_flags(url, &redis_url);
    all.extend(["--jwt-secret", SECRET, "--chat-rate", "1000"]);
    all.extend_from_slice(flags);
    TestServer::start(&all).await
}
