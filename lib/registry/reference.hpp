// Reference: an image reference as people write it ("debian",
// "debian:bookworm", "docker.io/library/debian@sha256:...",
// "127.0.0.1:5000/team/app:v1", optionally "docker://..."), parsed with the
// distribution/reference grammar and Docker Hub's rules. A plain value.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "util/digest.hpp"

namespace layer::registry {

inline constexpr std::string_view kDockerHubDomain = "docker.io";
inline constexpr std::string_view kDockerHubEndpoint = "registry-1.docker.io";

struct Reference {
  std::string domain;  // "docker.io", "127.0.0.1:5000", "[::1]:5000"
  std::string path;    // "library/debian", "team/app"
  std::string tag;     // "latest" when neither tag nor digest was given
  std::optional<Digest> digest;

  // Throws Error naming `s` and what is wrong with it.
  static Reference parse(std::string_view s);
  // True when `s` starts with a registry host ("quay.io/x", "localhost/x",
  // "127.0.0.1:5000/x"); false for short names ("debian", "team/app") that
  // parse() puts on Docker Hub.
  static bool names_registry(std::string_view s);

  // "docker.io/library/debian:bookworm", "host/x@sha256:...", or
  // "host/x:tag@sha256:..." when both were given.
  std::string str() const;
  // "docker.io/library/debian" (no tag or digest).
  std::string name() const { return domain + "/" + path; }
  // What the manifest is fetched by: the digest if given, else the tag.
  std::string object() const { return digest ? digest->str() : tag; }
  // Host[:port] to talk to: registry-1.docker.io for Docker Hub.
  std::string endpoint() const;
  // The host part of the domain, without port or brackets ("127.0.0.1", "::1").
  std::string host() const;
  // localhost, 127.0.0.0/8 or ::1: plain HTTP is allowed there.
  bool is_loopback() const;
};

}  // namespace layer::registry
