// Challenge: one authentication challenge from a WWW-Authenticate header
// (RFC 7235), e.g. Bearer realm="https://auth.example/token",service="x",
// scope="repository:a/b:pull". A plain value; parsing is thread-safe.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace layer::registry {

struct Challenge {
  std::string scheme;                         // lowercased: "bearer", "basic"
  std::map<std::string, std::string> params;  // names lowercased, values unquoted

  std::string param(const std::string& name) const {
    auto it = params.find(name);
    return it == params.end() ? std::string() : it->second;
  }

  // All challenges in one header value, in order. Malformed parts end the
  // parse (what was understood before them is kept); never throws.
  static std::vector<Challenge> parse(std::string_view header);
};

}  // namespace layer::registry
