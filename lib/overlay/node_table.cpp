#include "overlay/node_table.hpp"

#include <cassert>
#include <vector>

namespace layer::overlay {

NodeTable::~NodeTable() {
  std::vector<Node*> all;
  std::vector<Node*> todo{root_};
  for (Node* d : detached_) todo.push_back(d);
  while (!todo.empty()) {
    Node* n = todo.back();
    todo.pop_back();
    all.push_back(n);
    for (auto& [name, c] : n->children) todo.push_back(c);
  }
  for (Node* n : all) delete n;
}

void NodeTable::ref(Node* n) {
  std::lock_guard<std::mutex> g(mu_);
  ++n->refs;
}

void NodeTable::unref(Node* n, uint64_t count) {
  std::vector<Node*> dead;
  {
    std::lock_guard<std::mutex> g(mu_);
    while (n) {
      assert(n->refs >= count && "node reference count below zero");
      n->refs -= count;
      if (n->refs != 0) break;
      assert(n != root_ && "root node released");
      assert(n->children.empty());
      Node* p = n->parent;
      if (p) {
        auto it = p->children.find(n->name);
        if (it != p->children.end() && it->second == n) p->children.erase(it);
      }
      if (n->unlinked) detached_.erase(n);
      dead.push_back(n);
      n = p;
      count = 1;
    }
  }
  for (Node* d : dead) delete d;
}

NodeRef::~NodeRef() {
  if (n_) t_->unref(n_);
}

Node* NodeTable::parent_of(Node* n, std::string* name) {
  std::lock_guard<std::mutex> g(mu_);
  Node* p = n->parent;
  if (p) ++p->refs;
  if (name) *name = n->name;
  return p;
}

bool NodeTable::unlinked(Node* n) {
  std::lock_guard<std::mutex> g(mu_);
  return n->unlinked;
}

std::string NodeTable::path_of(Node* n) {
  std::vector<std::string> parts;
  {
    std::lock_guard<std::mutex> g(mu_);
    for (Node* c = n; c && c != root_; c = c->parent) parts.push_back(c->name);
  }
  std::string out;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!out.empty()) out += '/';
    out += *it;
  }
  return out;
}

Node* NodeTable::find_child(Node* parent, std::string_view name) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = parent->children.find(std::string(name));
  if (it == parent->children.end()) return nullptr;
  ++it->second->refs;
  return it->second;
}

Node* NodeTable::insert_child(Node* parent, std::string_view name, Node* fresh) {
  std::lock_guard<std::mutex> g(mu_);
  auto [it, inserted] = parent->children.try_emplace(std::string(name), fresh);
  if (!inserted) {
    ++it->second->refs;
    return it->second;
  }
  fresh->parent = parent;
  ++parent->refs;
  fresh->name = name;
  fresh->refs = 1;
  return fresh;
}

void NodeTable::detach_child(Node* parent, std::string_view name) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = parent->children.find(std::string(name));
  if (it == parent->children.end()) return;
  it->second->unlinked = true;
  detached_.insert(it->second);
  parent->children.erase(it);
}

void NodeTable::add_unnamed(Node* n) {
  std::lock_guard<std::mutex> g(mu_);
  n->refs = 1;
  n->unlinked = true;  // in no directory: freed with its last reference
  detached_.insert(n);
}

void NodeTable::move(Node* p1, const std::string& a, Node* s, Node* p2, const std::string& b,
                     Node* d, bool exchange) {
  std::vector<Node*> drop;  // parents that lost a child, unreferenced after the lock
  {
    std::lock_guard<std::mutex> g(mu_);
    auto take = [&](Node* par, const std::string& nm, Node* want) {
      auto it = par->children.find(nm);
      if (it != par->children.end() && it->second == want) par->children.erase(it);
    };
    take(p1, a, s);
    if (d) take(p2, b, d);
    if (exchange) {
      p1->children[a] = d;
      d->name = a;
      if (d->parent != p1) {
        ++p1->refs;
        drop.push_back(d->parent);
        d->parent = p1;
      }
    } else if (d) {
      d->unlinked = true;
      detached_.insert(d);
    }
    auto old = p2->children.find(b);
    if (old != p2->children.end()) {
      old->second->unlinked = true;
      detached_.insert(old->second);
      p2->children.erase(old);
    }
    p2->children[b] = s;
    s->name = b;
    if (s->parent != p2) {
      ++p2->refs;
      drop.push_back(s->parent);
      s->parent = p2;
    }
  }
  for (Node* p : drop) unref(p);
}

}  // namespace layer::overlay
