// Access lists: the content objects a daemon fetched on demand for a lazily
// pulled blob, in the order they were first wanted, kept in the store
// (access/<alg>-<hex>, by blob digest, so they outlive rmi and a pull of the
// same image again) for the next background completion to fetch first. An
// ordering hint only: a line that is not a digest is skipped, a digest the
// TOC does not name is ignored, and nothing is trusted for content.
// Stateless; thread-safe.
#pragma once

#include <vector>

#include "util/digest.hpp"

namespace layer::lazy {

constexpr size_t kAccessListMax = 16384;  // digests kept per blob

// The list for `blob` in the store at `root_fd`; empty if there is none or
// it cannot be read.
std::vector<Digest> read_access_list(int root_fd, const Digest& blob);
// Replaces it (a temporary renamed into place: a reader sees the old list or
// the new one). Throws Error.
void write_access_list(int root_fd, const Digest& blob, const std::vector<Digest>& list);

}  // namespace layer::lazy
