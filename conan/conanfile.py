import os

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy

required_conan_version = ">=2.1"


class StatedictConan(ConanFile):
    name = "statedict"
    version = "0.1.0"
    license = "MIT"
    url = "https://github.com/statedict/statedict"
    homepage = "https://github.com/statedict/statedict"
    description = "Safe state_dict loading for LibTorch: read any PyTorch checkpoint in C++ and load it into a torch::nn::Module with a structured report"
    topics = ("pytorch", "libtorch", "checkpoint", "state-dict", "safetensors", "header-only")
    # Header-only by default; configure() says what the options make of it.
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    # compiled: statedict::compiled, the library holding statedict's code (libstatedict.a);
    # tools: the statedict command line tool (inspect, diff, convert), in bin/.
    options = {"compiled": [True, False], "tools": [True, False]}
    default_options = {"compiled": False, "tools": False}
    no_copy_source = True

    def export_sources(self):
        root = os.path.join(self.recipe_folder, "..")
        for pattern in ("include/*", "src/*", "tools/*", "cmake/*", "CMakeLists.txt", "LICENSE"):
            copy(self, pattern, src=root, dst=self.export_sources_folder)

    def configure(self):
        if self.options.compiled:
            self.package_type = "static-library"
        elif self.options.tools:
            # Headers for its users and a program: neither a header library (it holds a binary)
            # nor an application (its users want the headers).
            self.package_type = "unknown"

    def layout(self):
        cmake_layout(self, src_folder=".")

    def requirements(self):
        # The public headers include LibTorch's, nlohmann's and (header-only, for DCP's zstd
        # transform) zstd's: their users see them too.
        self.requires("libtorch/[>=1.13]", transitive_headers=True, transitive_libs=True)
        self.requires("nlohmann_json/[>=3.2 <4]", transitive_headers=True)
        self.requires("zstd/[>=1.4 <2]", transitive_headers=True, transitive_libs=True)
        if self.options.tools:
            self.requires("cli11/[>=2 <3]", visible=False)

    def validate(self):
        check_min_cppstd(self, 17)
        if self.settings.os != "Linux":
            raise ConanInvalidConfiguration(f"{self.ref} reads files with Linux's mmap, pread and file leases: Linux only")

    def package_id(self):
        if not self.info.options.compiled and not self.info.options.tools:
            self.info.clear()  # the headers alone: one package for every configuration

    def generate(self):
        # Conan's packages (nlohmann_json, zstd, cli11, a libtorch that has a recipe) through
        # CMakeDeps; a [platform_requires] LibTorch has no generated files, and find_package(Torch)
        # finds the system's.
        CMakeDeps(self).generate()
        tc = CMakeToolchain(self)
        for option in ("TESTS", "EXAMPLES", "BENCHMARKS", "FUZZERS"):
            tc.cache_variables[f"STATEDICT_BUILD_{option}"] = False
        tc.cache_variables["STATEDICT_BUILD_COMPILED"] = bool(self.options.compiled)
        tc.cache_variables["STATEDICT_BUILD_TOOLS"] = bool(self.options.tools)
        tc.cache_variables["STATEDICT_INSTALL"] = True
        tc.cache_variables["STATEDICT_WERROR"] = False
        tc.generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()  # header-only: nothing to build

    def package(self):
        CMake(self).install()
        copy(self, "LICENSE", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))

    def package_info(self):
        # CMake consumers use the package's own statedictConfig.cmake (targets statedict::statedict
        # and, with compiled, statedict::compiled), which finds Torch and nlohmann_json itself: so
        # LibTorch may come from the system ([platform_requires]) or from a Conan package that
        # provides TorchConfig.cmake.
        self.cpp_info.set_property("cmake_find_mode", "none")
        self.cpp_info.builddirs = [os.path.join("share", "statedict", "cmake")]
        # For other generators (pkg-config, MSBuild, ...): the same in Conan's terms.
        if self.options.compiled:
            self.cpp_info.libs = ["statedict"]
            self.cpp_info.defines = ["STATEDICT_SEPARATE_COMPILATION"]
        else:
            self.cpp_info.libdirs = []
        if not self.options.tools:
            self.cpp_info.bindirs = []
