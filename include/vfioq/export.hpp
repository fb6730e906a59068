// SPDX-License-Identifier: MIT
// What the shared libraries export. They are built with hidden visibility, so
// a declaration is part of the binary interface only when it says VFIOQ_API
// (the driver library) or VFIOQ_MODEL_API (the model library); everything
// else stays inside the library that defines it.
#pragma once

#define VFIOQ_API __attribute__((visibility("default")))
#define VFIOQ_MODEL_API __attribute__((visibility("default")))
