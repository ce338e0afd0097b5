// The xattrs the store writes on a metadata-only layer entry whose data is a
// content object (docs/store-format-2.md): overlay.metacopy (empty) and
// overlay.redirect ("/sha256/ab/cdef...", from objects/). trusted.* in a
// root store, user.* in a rootless one. Constants only; thread-safe.
#pragma once

namespace layer::store {

struct ObjectMarkers {
  const char* metacopy;
  const char* redirect;
};

inline constexpr ObjectMarkers kTrustedObjectMarkers{"trusted.overlay.metacopy",
                                                     "trusted.overlay.redirect"};
inline constexpr ObjectMarkers kUserObjectMarkers{"user.overlay.metacopy", "user.overlay.redirect"};

inline constexpr const ObjectMarkers& object_markers(bool user) {
  return user ? kUserObjectMarkers : kTrustedObjectMarkers;
}

}  // namespace layer::store
