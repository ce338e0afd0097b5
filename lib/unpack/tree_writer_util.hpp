// Small helpers shared by the TreeWriter's source files (tree_writer.cpp,
// entry_meta.cpp, file_writer.cpp). Internal to lib/unpack; stateless.
#pragma once

#include <string>
#include <string_view>

namespace layer::unpack::detail {

// For messages: the name with control characters replaced, at most 300 bytes.
inline std::string shown(std::string_view s) {
  std::string out(s.substr(0, 300));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  if (s.size() > 300) out += "...";
  return out;
}

}  // namespace layer::unpack::detail
