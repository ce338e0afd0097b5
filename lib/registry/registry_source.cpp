// Placeholder until the registry client lands (issue 3): refuses clearly.
#include "registry/registry_source.hpp"

#include "util/error.hpp"

namespace layer::registry {

std::unique_ptr<oci::ImageSource> open_registry_source(const std::string& ref,
                                                       const RegistryOptions&) {
  throw Error("'" + ref + "': pulling from registries is not implemented yet");
}

std::string normalize_reference(const std::string& ref) { return ref; }

}  // namespace layer::registry
