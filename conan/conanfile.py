import os

from conan import ConanFile
from conan.tools.cmake import CMake, CMakeToolchain, cmake_layout
from conan.tools.files import copy


class StatedictConan(ConanFile):
    name = "statedict"
    version = "0.1.0"
    license = "MIT"
    description = "Safe state_dict loading for LibTorch: read any PyTorch checkpoint in C++ and load it into a torch::nn::Module with a structured report"
    topics = ("pytorch", "libtorch", "checkpoint", "state-dict", "safetensors", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    no_copy_source = True

    def export_sources(self):
        root = os.path.join(self.recipe_folder, "..")
        for pattern in ("include/*", "cmake/*", "CMakeLists.txt", "LICENSE"):
            copy(self, pattern, src=root, dst=self.export_sources_folder)

    def layout(self):
        cmake_layout(self, src_folder=".")

    def requirements(self):
        self.requires("libtorch/[>=1.13]")
        self.requires("nlohmann_json/[>=3.2 <4]")
        # DCP's zstd transform (statedictConfig.cmake links it where found).
        self.requires("zstd/[>=1.4 <2]")

    def package_id(self):
        self.info.clear()

    def generate(self):
        # The headers and the CMake package are installed by the project's own install rules; only
        # the library is configured (no tests, examples, benchmarks, command line tool or compiled mode).
        tc = CMakeToolchain(self)
        for option in ("TESTS", "EXAMPLES", "BENCHMARKS", "TOOLS", "FUZZERS", "COMPILED"):
            tc.cache_variables[f"STATEDICT_BUILD_{option}"] = False
        tc.cache_variables["STATEDICT_INSTALL"] = True
        tc.cache_variables["STATEDICT_WERROR"] = False
        tc.generate()

    def package(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.install()
        copy(self, "LICENSE", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        # Consumers use the package's own statedictConfig.cmake (target statedict::statedict, which
        # finds Torch and nlohmann_json itself), so LibTorch may come from the system
        # ([platform_requires]) or from a Conan package that provides TorchConfig.cmake.
        self.cpp_info.set_property("cmake_find_mode", "none")
        self.cpp_info.builddirs = [os.path.join("share", "statedict", "cmake")]
