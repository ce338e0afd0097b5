// Copier: copy-up. A lower object is copied into work/ under a temporary
// name with its data, owner, mode, xattrs and times, then renamed into the
// upper directory: a crash leaves either no upper copy or the whole one.
// Parents are copied up first. A lower file with several names becomes a
// link to the copy another name made (LinkIndex); a big regular file is
// copied with its metadata only, its data following lazily (LazyCopy). A
// metadata change (chmod, chown, utimens, xattrs) of a lower regular file
// copies no data at all: the upper file is a metadata-only copy in the
// kernel's metacopy format, whose data stays below until it is written.
//
// Thread-safe. Node::copy_mu serializes the copy-up of one node and is held
// across its syscalls; LinkIndex::mu() is taken after it for a multiply
// linked file, and the node's mu last, to publish (lock order: overlay.hpp).
#pragma once

#include <string>

#include "overlay/node.hpp"
#include "util/result.hpp"

namespace layer::overlay {

struct Config;
class LazyCopy;
class LinkIndex;
class NodeTable;
class UpperDir;

// How much of a regular file's data a copy-up takes along.
enum class CopyData {
  kAll,   // everything now (small files), or the rest in the background (big ones)
  kNone,  // nothing: the file is about to be truncated to zero
  kMeta,  // a regular file's metadata only, for a metadata change; the data
          // stays below (Node::data_layer) until a kAll or kNone copy-up
};

class Copier {
 public:
  // `datadir`: the store's objects/ (-o datadir) or -1: a lower
  // metadata-only entry's data is copied from its object.
  Copier(const Config& c, NodeTable& nodes, UpperDir& upper, LinkIndex& index, LazyCopy& lazy,
         int datadir)
      : c_(c), nodes_(nodes), upper_(upper), index_(index), lazy_(lazy), datadir_(datadir) {}

  // Copies n (and its parents) up if it is not in the upper layer yet, and
  // the data of a metadata-only copy unless `data` is kMeta.
  Result<void> copy_up(Node* n, CopyData data);

 private:
  struct Job;  // one copy-up under way
  // REQUIRES: n->copy_mu held.
  Result<void> copy_locked(Node* n, Node* parent, const std::string& name, CopyData data);
  // The object in work/ with its data (or, lazily, its size only).
  Result<void> make_work_copy(Job& j, CopyData data);
  // Owner, mode, xattrs, origin, times; fsync of its data.
  Result<void> copy_metadata(Job& j);
  // Into the upper directory; the index, the lazy fill and the node learn of it.
  Result<void> publish(Job& j);
  Result<void> copy_xattrs(int sfd, const char* sname, int dfd, const char* dname);
  // The data of n, a metadata-only copy, into its upper file (by range, lazily
  // for a big file), then the marker removed: a crash before that leaves the
  // metadata-only copy, whose data is still below.
  Result<void> copy_data_in(Node* n, CopyData data);
  // A lazy copy's partial marker: its size, lowerdir and path (LazyCopy::recover).
  std::string lazy_marker(Node* parent, const std::string& name, int layer, off_t size);

  const Config& c_;
  NodeTable& nodes_;
  UpperDir& upper_;
  LinkIndex& index_;
  LazyCopy& lazy_;
  const int datadir_;  // not owned
};

}  // namespace layer::overlay
