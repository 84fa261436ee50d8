# redq: set-up, build, demo, tests and benchmarks on Debian/Ubuntu.
#   make demo   install what is missing, build, run the demo
#   make demo-dashboard  the live dashboard on a busy namespace, saved as dashboard.png
#   make test   install what is missing, run cargo test and the testthat suite
#   make chaos  the chaos soak on one server, a Redis Cluster and Sentinel (not part of make test)
#   make bench  benchmarks against doParallel, sequential %do%, future plans, PSOCK clusters,
#               MulticoreParam and SnowParam; rush-style task tables and worker loops
#   make profile  where a task's time goes: CPU per process, Redis commands and scripts per task

R_PKGS = r-base-dev redis-server libssl-dev pkg-config openssl r-cran-foreach r-cran-iterators r-cran-processx \
         r-cran-testthat r-cran-withr r-cran-callr r-cran-doparallel r-cran-dorng \
         r-cran-knitr r-cran-rmarkdown r-cran-future r-cran-future.apply r-cran-furrr \
         r-cran-progressr r-bioc-biocparallel r-bioc-biocneighbors \
         r-cran-r6 r-cran-data.table r-cran-plyr \
         r-cran-cli r-cran-httpuv r-cran-jsonlite chromium curl
export PATH := $(HOME)/.cargo/bin:$(PATH)
LIB ?= $(CURDIR)/.lib

.PHONY: deps install demo demo-dashboard test bench profile chaos docs wrappers clean

deps:
	@bash tools/deps.sh $(R_PKGS)

install: deps
	@mkdir -p $(LIB)
	@echo "Building and installing redq into $(LIB) (the first build compiles the Rust core: a minute or two)"
	@R CMD INSTALL --no-multiarch --library=$(LIB) . > $(LIB)/install.log 2>&1 || \
	  { cat $(LIB)/install.log; echo "R CMD INSTALL failed (log above)"; exit 1; }

demo: install
	@R_LIBS=$(LIB) Rscript inst/examples/demo.R

# The live dashboard on a busy namespace, saved as dashboard.png.
demo-dashboard: install
	@R_LIBS=$(LIB) Rscript inst/examples/dashboard.R dashboard.png

test: install
	@bash tools/test.sh $(LIB)

bench: install
	R_LIBS=$(LIB) Rscript bench/run.R

profile: install
	@R_LIBS=$(LIB) Rscript bench/profile.R

# The chaos soak: faults injected while tasks and loops run, on one server,
# a Redis Cluster and a Sentinel pair (or those named: make chaos TOPOLOGIES=single).
chaos: install
	@R_LIBS=$(LIB) Rscript tools/chaos.R $(TOPOLOGIES)

# After changing a binding: rebuild, regenerate the R wrappers from it, and
# install again with them.
wrappers: install
	@R_LIBS=$(LIB) Rscript tools/wrappers.R
	@$(MAKE) --no-print-directory install

docs: deps
	@bash tools/deps.sh r-cran-roxygen2
	Rscript -e 'roxygen2::roxygenise(load_code = roxygen2::load_source)'

clean:
	rm -rf src/rust/target src/*.o src/*.so $(LIB)
