// The store keys through which loom-launch's elastic agent and the elastic
// workers (elastic/elastic_world.h) talk (docs/elastic.md "Store keys"). Both
// sides use only these helpers, so the contract lives in one place.
//
// Every key sits under root(restart_count) = "loom/<restart_count>/elastic" of
// the store the launcher hosts (the workers' own store is the PrefixStore
// "loom/<restart_count>", so for them the same keys are "elastic/...").
//
//   failures       counter (Store::add). Whoever learns of a failure (the
//                  launcher seeing a worker exit, a worker seeing a peer's
//                  heartbeat go silent or a collective fail) bumps it; every
//                  worker's watchdog aborts its communicator when it changes.
//   dead/<id>      text: why worker <id> is lost ("killed by SIGKILL", "sent no
//                  heartbeat for 5.2 s ..."). Written before failures is bumped;
//                  the first writer wins (compareSet from absent). The launcher
//                  SIGKILLs a live worker whose id appears here (evicted by its
//                  peers), so a stopped or hung process cannot come back.
//   next_id        counter: the launcher allocates a replacement's stable id as
//                  initial world size + add(next_id, 1) - 1.
//   join/<id>      set by a replacement worker when it is ready to be admitted;
//   join_count     then bumped, so members notice joiners with one read.
//   finished       set by the workers when training ended (success or a clean
//                  stop): joiners still waiting exit 0, the launcher stops
//                  replacing.
// Worker environment set by the launcher in elastic mode:
//   LOOM_ELASTIC_ID    the worker's stable id (initial workers: their RANK)
//   LOOM_ELASTIC_JOIN  "1" for a replacement that joins a running job
#pragma once

#include <string>

namespace loom::dist::elastic_keys {

inline std::string root(int restart_count) { return "loom/" + std::to_string(restart_count) + "/elastic"; }
/// Relative to a worker's own store ("loom/<restart_count>").
inline const char* kWorkerPrefix = "elastic";

inline const char* kFailures = "failures";
inline std::string dead(int id) { return "dead/" + std::to_string(id); }
inline const char* kNextId = "next_id";
inline std::string join(int id) { return "join/" + std::to_string(id); }
inline const char* kJoinCount = "join_count";
inline const char* kFinished = "finished";

inline const char* kIdEnv = "LOOM_ELASTIC_ID";
inline const char* kJoinEnv = "LOOM_ELASTIC_JOIN";

}  // namespace loom::dist::elastic_keys
