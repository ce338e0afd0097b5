// NodeTable: the tree of Nodes the kernel has looked up. Owns every Node and
// frees it with its last reference; keeps the parent/child links and the
// bookkeeping of unlink and rename. Thread-safe: mu_ guards every Node's
// parent, name, refs, unlinked and children, and detached_; it is held only
// for map and counter updates, never across a syscall, and is the first
// mutex in the overlay's lock order (see overlay.hpp).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>

#include "overlay/node.hpp"
#include "util/thread_annotations.hpp"

namespace layer::overlay {

class NodeTable {
 public:
  // Takes `root`, which holds one reference that is never dropped.
  explicit NodeTable(Node* root) : root_(root) { root->refs = 1; }
  ~NodeTable();  // frees every node still referenced (unmount)
  NodeTable(const NodeTable&) = delete;
  NodeTable& operator=(const NodeTable&) = delete;

  Node* root() const { return root_; }
  void ref(Node* n) EXCLUDES(mu_);
  // Drops `count` references; a node left with none is freed, and with it
  // its reference on its parent.
  void unref(Node* n, uint64_t count = 1) EXCLUDES(mu_);

  // n's parent, referenced (null for the root), and n's name if `name`.
  Node* parent_of(Node* n, std::string* name) EXCLUDES(mu_);
  bool unlinked(Node* n) EXCLUDES(mu_);
  // n's path from the root ("a/b"), for the lazy copy-up marker.
  std::string path_of(Node* n) EXCLUDES(mu_);

  // The child `name` of parent, referenced, or null.
  Node* find_child(Node* parent, std::string_view name) EXCLUDES(mu_);
  // Makes `fresh` (one reference, for the caller) the child `name` of parent;
  // if another thread got there first, that node (referenced) is returned
  // instead and the caller deletes `fresh`.
  Node* insert_child(Node* parent, std::string_view name, Node* fresh) EXCLUDES(mu_);
  // The child `name` is gone from the tree; its node lives on, unlinked,
  // while referenced.
  void detach_child(Node* parent, std::string_view name) EXCLUDES(mu_);
  // A node made with no name (O_TMPFILE): unlinked from the start, with one
  // reference for the caller.
  void add_unnamed(Node* n) EXCLUDES(mu_);
  // A rename in the tree: s from (p1, a) to (p2, b). d was the node at
  // (p2, b) (or null); with `exchange` it moves to (p1, a), else it and any
  // other node at (p2, b) are unlinked.
  void move(Node* p1, const std::string& a, Node* s, Node* p2, const std::string& b, Node* d,
            bool exchange) EXCLUDES(mu_);

 private:
  mutable std::mutex mu_;
  Node* const root_;
  std::unordered_set<Node*> detached_ GUARDED_BY(mu_);  // unlinked, still referenced
};

}  // namespace layer::overlay
