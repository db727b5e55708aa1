// PostgresRevocations: token revocations shared by every node on one PostgreSQL database.
//
// A node's revocation (logout, account deletion, single_session) is appended to the table
// `revocation` and announced with NOTIFY nkhost_revocation; every node LISTENs, reads the rows
// it has not seen (by sequence number) and applies those of other nodes. The table, not the
// notification, is the record: a node that was disconnected, or starts later, catches up from
// it (at startup every unexpired row is applied before the node serves), and each node also
// re-reads it every second in case a notification was missed. Appends are serialised by an
// advisory lock, so sequence numbers commit in order and none is skipped. Rows are deleted once
// the tokens they concern have expired.
//
// Why LISTEN/NOTIFY on the database the nodes already share: no other service to run, and the
// propagation time is one round trip (a few milliseconds on a LAN); the once-a-second re-read
// bounds it when a notification is lost.
//
// One thread and one connection of its own. publish() only queues (it never blocks a request);
// while the database is unreachable the queue holds up to kMaxQueued revocations (more are
// dropped, counted and logged) and the thread reconnects every second.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "store/options.hpp"

namespace nk::metrics {
class Registry;
}

namespace nk::store {

class PostgresRevocations {
  public:
    // Besides revocations (kinds 1-4, auth::Revocation::Kind), the feed carries this: a socket
    // opened on a node with session.single_socket, whose user's sockets the other nodes close.
    static constexpr int kSocketOpened = 5;

    struct Record {
        int kind = 0;  // auth::Revocation::Kind, or kSocketOpened
        std::string user_id;
        std::string token_id;
        std::int64_t at = 0;
        std::int64_t expires_at = 0;
    };
    using Apply = std::function<void(const Record&)>;

    static constexpr std::size_t kMaxQueued = 100000;

    // Applies every unexpired revocation already recorded (throws std::runtime_error when the
    // database cannot be read), then follows new ones on a thread of its own. `apply` is called
    // on that thread. `metrics` must outlive this.
    PostgresRevocations(const Options& options, Apply apply, metrics::Registry* metrics = nullptr);
    ~PostgresRevocations();
    PostgresRevocations(const PostgresRevocations&) = delete;
    PostgresRevocations& operator=(const PostgresRevocations&) = delete;

    // Queues a revocation of this node for the others. Thread-safe, never blocks.
    void publish(Record record);
    // Sends what is queued (one attempt) and stops following; `apply` is not called afterwards.
    // Idempotent; the destructor calls it.
    void stop();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace nk::store
