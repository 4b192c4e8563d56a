// User objects (cuUserObjectCreate/Retain/Release, cuGraphRetainUserObject,
// cuGraphReleaseUserObject): a destructor that runs when the last reference
// goes, references held by callers, graphs and graph execs.
//
// cuda.h: destructors "are executed by a shared internal thread" and, with
// CU_USER_OBJECT_NO_DESTRUCTOR_SYNC (the only flag, and required), "cannot be
// waited on by any CUDA API". So they run here on one destructor thread, in
// the order their objects died, never inside the call that dropped the last
// reference (a destructor that takes a lock its releaser holds cannot
// deadlock). An exec's references are shared with its queued launches: an
// exec destroyed while a launch is pending releases them when that launch has
// run (the Programming Guide's rule for user objects of graph execs).
//
// Every function documents only CUDA_ERROR_INVALID_VALUE; that is what bad
// handles, counts and flags answer. guess: releasing more references than are
// held (undefined in cuda.h) is refused with INVALID_VALUE and changes
// nothing, rather than running the destructor early.
#include <climits>
#include <deque>

#include "graph_nodes.h"
#include "state.h"

using namespace sim;

namespace {

struct DestructorQueue {
    std::mutex mu;
    std::condition_variable work, drained;
    std::deque<std::pair<CUhostFn, void*>> jobs;
    bool started = false;
    bool running = false;
};
DestructorQueue& destructors() {
    static auto* q = new DestructorQueue;  // never destroyed: the thread may outlive static destruction
    return *q;
}

void destructor_thread() {
    DestructorQueue& q = destructors();
    std::unique_lock<std::mutex> lk(q.mu);
    for (;;) {
        q.work.wait(lk, [&] { return !q.jobs.empty(); });
        auto job = q.jobs.front();
        q.jobs.pop_front();
        q.running = true;
        lk.unlock();
        job.first(job.second);
        lk.lock();
        q.running = false;
        if (q.jobs.empty()) q.drained.notify_all();
    }
}

void queue_destructor(CUhostFn fn, void* ptr) {
    DestructorQueue& q = destructors();
    std::lock_guard<std::mutex> lk(q.mu);
    q.jobs.emplace_back(fn, ptr);
    if (!q.started) {
        q.started = true;
        std::thread(destructor_thread).detach();
    }
    q.work.notify_one();
}

bool valid_count(unsigned n) { return n != 0 && n <= (unsigned)INT_MAX; }

}  // namespace

namespace sim {

void user_object_retain(UserObject* u, unsigned n) { u->count.fetch_add(n, std::memory_order_relaxed); }

bool user_object_release(UserObject* u, unsigned n) {
    long long c = u->count.load(std::memory_order_relaxed);
    do {
        if (c < (long long)n) return false;
    } while (!u->count.compare_exchange_weak(c, c - n, std::memory_order_acq_rel));
    if (c != (long long)n) return true;
    // The last reference: nothing can name the object any more (a handle used
    // after this is a destroyed handle, as cuda.h makes it undefined).
    CUhostFn fn = u->destroy;
    void* ptr = u->ptr;
    g_live[kLiveUser].fetch_sub(1, std::memory_order_relaxed);
    reclaim_object(u);
    queue_destructor(fn, ptr);
    return true;
}

void UserRefs::add(UserObject* u, unsigned n) {
    for (auto& e : held)
        if (e.first == u) {
            e.second += n;
            return;
        }
    held.emplace_back(u, n);
}

bool UserRefs::remove(UserObject* u, unsigned n) {
    for (size_t i = 0; i < held.size(); ++i)
        if (held[i].first == u) {
            if (held[i].second < n) return false;
            held[i].second -= n;
            if (held[i].second == 0) held.erase(held.begin() + (long)i);
            user_object_release(u, n);
            return true;
        }
    return false;
}

void UserRefs::retain_all_of(const UserRefs& other) {
    for (auto& e : other.held) {
        user_object_retain(e.first, e.second);
        add(e.first, e.second);
    }
}

void UserRefs::release_all() {
    std::vector<std::pair<UserObject*, unsigned>> mine;
    mine.swap(held);
    for (auto& e : mine) user_object_release(e.first, e.second);
}

void end_graph(Graph* g) {
    std::vector<std::pair<UserObject*, unsigned>> refs;
    std::vector<Node*> nodes;
    {
        std::lock_guard<std::mutex> lk(g->mu);
        g->alive.store(false, std::memory_order_release);
        refs.swap(g->user_refs.held);
        nodes = g->nodes;
        // Its node handles are stale from now on (the nodes themselves go with the slot).
        for (Node* n : nodes) unregister_node(n);
    }
    for (Node* n : nodes) end_owned_graphs(n);
    for (auto& e : refs) user_object_release(e.first, e.second);
    reclaim_object(g);  // its nodes are freed when the slot is reused (~Graph)
}

}  // namespace sim

static UserObject* live_user(CUuserObject h) { return live_object<UserObject>(h); }

// A graph that may still be under capture: greenres and cuda.core attach user
// objects to the graph that cuStreamGetCaptureInfo returns while capturing.
static Graph* graph_for_user_refs(CUgraph h) { return live_object<Graph>(h); }

SIM_EXPORT CUresult cuUserObjectCreate(CUuserObject* out, void* ptr, CUhostFn destroy, unsigned int initialRefcount,
                                       unsigned int flags) {
    SIM_ENTER_INIT("cuUserObjectCreate");
    if (out == nullptr || destroy == nullptr || !valid_count(initialRefcount) ||
        flags != CU_USER_OBJECT_NO_DESTRUCTOR_SYNC)
        return CUDA_ERROR_INVALID_VALUE;
    auto* u = make_object<UserObject>();
    if (u == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    u->ptr = ptr;
    u->destroy = destroy;
    u->count.store(initialRefcount, std::memory_order_release);
    g_live[kLiveUser].fetch_add(1, std::memory_order_relaxed);
    *out = handle_of<CUuserObject>(u);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuUserObjectRetain(CUuserObject object, unsigned int count) {
    SIM_ENTER_INIT("cuUserObjectRetain");
    if (!valid_count(count)) return CUDA_ERROR_INVALID_VALUE;
    UserObject* u = live_user(object);
    if (u == nullptr) return CUDA_ERROR_INVALID_VALUE;
    user_object_retain(u, count);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuUserObjectRelease(CUuserObject object, unsigned int count) {
    SIM_ENTER_INIT("cuUserObjectRelease");
    if (!valid_count(count)) return CUDA_ERROR_INVALID_VALUE;
    UserObject* u = live_user(object);
    if (u == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return user_object_release(u, count) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

SIM_EXPORT CUresult cuGraphRetainUserObject(CUgraph graph, CUuserObject object, unsigned int count,
                                            unsigned int flags) {
    SIM_ENTER_INIT("cuGraphRetainUserObject");
    if (!valid_count(count) || (flags & ~(unsigned)CU_GRAPH_USER_OBJECT_MOVE) != 0) return CUDA_ERROR_INVALID_VALUE;
    Graph* g = graph_for_user_refs(graph);
    UserObject* u = live_user(object);
    if (g == nullptr || u == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(g->mu);
    if (!g->alive.load(std::memory_order_acquire)) return CUDA_ERROR_INVALID_VALUE;  // lost a race with its end
    // MOVE hands the caller's references to the graph; without it the graph gets new ones.
    if (!(flags & CU_GRAPH_USER_OBJECT_MOVE)) user_object_retain(u, count);
    g->user_refs.add(u, count);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGraphReleaseUserObject(CUgraph graph, CUuserObject object, unsigned int count) {
    SIM_ENTER_INIT("cuGraphReleaseUserObject");
    if (!valid_count(count)) return CUDA_ERROR_INVALID_VALUE;
    Graph* g = graph_for_user_refs(graph);
    UserObject* u = live_user(object);
    if (g == nullptr || u == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(g->mu);
    if (!g->alive.load(std::memory_order_acquire)) return CUDA_ERROR_INVALID_VALUE;
    return g->user_refs.remove(u, count) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

// Tests: waits until every destructor queued so far has run. 0 when drained,
// 1 when `timeout_ms` passed first.
SIM_EXPORT int greenres_sim_wait_user_object_destructors(int timeout_ms) {
    DestructorQueue& q = destructors();
    std::unique_lock<std::mutex> lk(q.mu);
    bool ok = q.drained.wait_for(lk, std::chrono::milliseconds(timeout_ms),
                                 [&] { return q.jobs.empty() && !q.running; });
    return ok ? 0 : 1;
}
