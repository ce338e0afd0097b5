#include "oci/image_source.hpp"

#include "oci/archive_source.hpp"
#include "oci/layout_source.hpp"
#include "util/error.hpp"

namespace layer::oci {

std::unique_ptr<ImageSource> open_local_source(const std::string& ref) {
  // As containers/image: the path ends at the first ':' after the transport.
  auto split = [&](size_t prefix) {
    std::string rest = ref.substr(prefix);
    size_t colon = rest.find(':');
    if (colon == std::string::npos) return std::make_pair(rest, std::string());
    return std::make_pair(rest.substr(0, colon), rest.substr(colon + 1));
  };
  if (ref.rfind("oci:", 0) == 0) {
    auto [dir, tag] = split(4);
    if (dir.empty()) throw Error("'" + ref + "': no layout directory");
    return std::make_unique<LayoutSource>(dir, tag);
  }
  if (ref.rfind("docker-archive:", 0) == 0) {
    auto [file, name] = split(15);
    if (file.empty()) throw Error("'" + ref + "': no archive file");
    return std::make_unique<ArchiveSource>(file, name);
  }
  throw Error("'" + ref +
              "': not a local image reference (oci:DIR[:TAG] or docker-archive:FILE[:REF])");
}

}  // namespace layer::oci
