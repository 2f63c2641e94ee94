// semantic_to_instances.ijm - a semantic U-Net output (background, inner, edge) -> instance labels.
//
// Part of rescale4dl_bmz; the deepImageJ post-processing step of its semantic model packages.
// The rule of rescale4dl_bmz.data.labels.semantic_to_instances (objects grown back over inner + edge):
//   1. argmax over the 3 channels (ties go to the lower channel, as numpy's argmax);
//   2. inner = class 1, holes filled; cells = inner or edge (class 2), holes filled;
//   3. Euclidean distance map of inner; seeds = maxima rising more than h (default 2) px above
//      their saddle; watershed of the distance map from those seeds inside inner;
//   4. objects grown back over the cells region (edge pixels and watershed lines go to a
//      neighbouring object); region parts no object reaches become objects of their own;
//   5. with DeepBacs edges (outside an object on its top/left sides), edge pixels whose upper or
//      left neighbour is background are given back to the background (the outer rim);
//   6. objects under min_size (default 10) px are dropped (labels are not renumbered).
// Core ImageJ 1.x only (no MorphoLibJ): Distance Map (32-bit EDM), Find Maxima (prominence = h,
// "Segmented Particles" = ImageJ's own watershed), Analyze Particles (Count Masks) and 4-neighbour
// Maximum filters restricted to the region for the growth. ImageJ's watershed draws 1-px lines
// and breaks ties differently from scikit-image's, so a few pixels per object differ from the
// Python result (the test suite measures and bounds the agreement on real U-Net predictions).
//
// Input: an image with 3 planes (a 3-channel hyperstack as deepImageJ returns the output, or a
// 3-slice stack) in the order background, inner, edge; probabilities or any scores.
// Use:
//   - no argument (deepImageJ post-processing, or Plugins > Macros > Run...): works on the active
//     image and opens "<title>-labels" (16-bit labels, calibration kept);
//   - argument "input=<file>\noutput=<file>[\nh=2][\nmin_size=10]" (one key=value per line, or ';'
//     between them): reads a TIFF, writes the labels as TIFF.
// Errors end the macro with exit("...") naming the file; the result is only saved on success.

requires("1.52a");

var H = 2;
var MIN_SIZE = 10;

main(getArgument());

function main(argument) {
	input = argValue(argument, "input", "");
	output = argValue(argument, "output", "");
	H = parseFloat(argValue(argument, "h", "2"));
	MIN_SIZE = parseInt(argValue(argument, "min_size", "10"));
	if (isNaN(H) || H < 0)
		exit("semantic_to_instances: h must be a number >= 0");
	if (isNaN(MIN_SIZE) || MIN_SIZE < 0)
		exit("semantic_to_instances: min_size must be an integer >= 0");
	if (input == "") {
		if (nImages == 0)
			exit("semantic_to_instances: no image open and no input= given");
		title = getTitle();
		setBatchMode(true);
		result = labels(getImageID(), title);
		selectImage(result);
		dot = lastIndexOf(title, ".");
		if (dot > 0)
			title = substring(title, 0, dot);
		rename(title + "-labels");
		setBatchMode("exit and display");
		return;
	}
	if (output == "")
		exit("semantic_to_instances: input= given without output=");
	if (!File.exists(input))
		exit("semantic_to_instances: input not found: " + input);
	setBatchMode(true);
	open(input);
	source = getImageID();
	result = labels(source, input);
	selectImage(result);
	saveAs("Tiff", output);
	close("*");
	setBatchMode(false);
}

function argValue(argument, key, fallback) {
	argument = replace(argument, ";", "\n");
	lines = split(argument, "\n");
	for (i = 0; i < lines.length; i++) {
		line = String.trim(lines[i]);
		if (startsWith(line, key + "="))
			return substring(line, lengthOf(key) + 1);
	}
	return fallback;
}

// a 255/0 mask of (a - b > 0) (strict) or (a - b >= 0)
function greater(a, b, strict) {
	imageCalculator("Subtract create 32-bit", a, b);
	d = getImageID();
	if (strict)
		setThreshold(1e-45, 1e30);
	else
		setThreshold(0, 1e30);
	run("Convert to Mask");
	return d;
}

function both(a, b) {
	imageCalculator("AND create", a, b);
	return getImageID();
}

// number of non-zero pixels of a 255/0 mask
function count(mask) {
	selectImage(mask);
	getStatistics(area, mean);
	return round(mean * getWidth() * getHeight() / 255);
}

// a 255/0 mask of the non-zero pixels of a label image
function nonzero(image) {
	selectImage(image);
	run("Duplicate...", "title=nonzero");
	setThreshold(0.5, 1e30);
	run("Convert to Mask");
	return getImageID();
}

// labels of the particles of a 255/0 mask (16-bit count mask; 8-connected particles)
function particles(mask) {
	selectImage(mask);
	run("Analyze Particles...", "size=0-Infinity show=[Count Masks] clear");
	id = getImageID();
	run("32-bit");
	return id;
}

// set to 0 every label of `lab` that holds no seed point (255 in `seeds`)
function keepSeeded(lab, seeds) {
	selectImage(seeds);
	run("32-bit");
	run("Divide...", "value=255");
	imageCalculator("Multiply create 32-bit", lab, seeds);
	hit = getImageID();
	selectImage(lab);
	getStatistics(area, mean, min, top);
	selectImage(hit);
	getHistogram(values, counts, top + 1, 0, top + 1);
	selectImage(lab);
	dropped = 0;
	for (v = 1; v <= top; v++)
		if (counts[v] == 0) {
			changeValues(v, v, 0);
			dropped++;
		}
	selectImage(hit);
	close();
	return dropped;
}

function labels(source, name) {
	run("Options...", "iterations=1 count=1 black edm=32-bit");
	setOption("ScaleConversions", false);
	selectImage(source);
	getDimensions(width, height, channels, slices, frames);
	if (channels * slices * frames != 3)
		exit("semantic_to_instances: " + name + " has " + (channels * slices * frames)
			+ " planes; expected 3 (background, inner, edge)");
	if (bitDepth() == 24)
		exit("semantic_to_instances: " + name + " is an RGB image; expected 3 channels of scores");
	getVoxelSize(pw, ph, pd, unit);
	run("Duplicate...", "title=planes duplicate");
	planes = getImageID();
	if (Stack.isHyperstack)
		run("Hyperstack to Stack");
	p = newArray(3);
	for (k = 0; k < 3; k++) {
		selectImage(planes);
		setSlice(k + 1);
		run("Duplicate...", "title=p" + k);
		run("32-bit");
		p[k] = getImageID();
	}
	// 1. argmax
	a = greater(p[1], p[0], true);
	b = greater(p[1], p[2], false);
	inner = both(a, b);
	c = greater(p[2], p[0], true);
	d = greater(p[2], p[1], true);
	edge = both(c, d);
	// 2. holes filled
	selectImage(inner);
	run("Fill Holes");
	imageCalculator("OR create", inner, edge);
	region = getImageID();
	run("Fill Holes");
	// 3. distance map, seeds by prominence, watershed inside inner
	selectImage(inner);
	run("Distance Map");
	edm = getImageID();
	run("Find Maxima...", "prominence=" + H + " output=[Segmented Particles]");
	basins = getImageID();
	cut = both(basins, inner);
	lab = particles(cut);
	// watershed pieces without a seed are left to the growth step
	selectImage(edm);
	run("Find Maxima...", "prominence=" + H + " output=[Single Points]");
	seeds = getImageID();
	keepSeeded(lab, seeds);
	// 4. growth over the region (4-neighbours), until nothing changes
	previous = -1;
	while (true) {
		known = nonzero(lab);
		imageCalculator("Subtract create", region, known);
		todo = getImageID();
		n = count(todo);
		if (n == 0 || n == previous) {
			close("nonzero");
			break;
		}
		previous = n;
		selectImage(lab);
		run("Duplicate...", "title=grown");
		grown = getImageID();
		run("Maximum...", "radius=0.5");
		selectImage(todo);
		run("32-bit");
		run("Divide...", "value=255");
		imageCalculator("Multiply", grown, todo);
		imageCalculator("Add", lab, grown);
		selectImage(grown);
		close();
		selectImage(todo);
		close();
		selectImage(known);
		close();
	}
	// region parts no object reached: objects of their own
	selectImage(todo);
	if (n > 0) {
		selectImage(lab);
		getStatistics(area, mean, min, top);
		extra = particles(todo);
		selectImage(extra);
		changeValues(0, 0, NaN);
		run("Add...", "value=" + top);
		changeValues(NaN, NaN, 0);
		imageCalculator("Add", lab, extra);
	}
	// 5. DeepBacs edges lie outside an object on its top/left sides: edge pixels whose upper or
	//    left neighbour is background go back to the background (beyond the border: not background)
	selectImage(lab);
	run("Duplicate...", "title=background");
	setThreshold(-0.5, 0.5);
	run("Convert to Mask");
	bg = getImageID();
	run("Duplicate...", "title=above");
	run("Translate...", "x=0 y=1 interpolation=None");
	above = getImageID();
	selectImage(bg);
	run("Translate...", "x=1 y=0 interpolation=None");
	imageCalculator("OR create", above, bg);
	near = getImageID();
	rim = both(near, edge);
	selectImage(rim);
	run("32-bit");
	run("Divide...", "value=255");
	run("Subtract...", "value=1");
	run("Multiply...", "value=-1");
	imageCalculator("Multiply", lab, rim);
	// 6. small objects dropped
	selectImage(lab);
	getStatistics(area, mean, min, top);
	if (top > 65535)
		exit("semantic_to_instances: " + name + " has more than 65535 objects");
	run("16-bit");
	getHistogram(values, counts, 65536);
	for (v = 1; v <= top; v++)
		if (counts[v] > 0 && counts[v] < MIN_SIZE)
			changeValues(v, v, 0);
	setVoxelSize(pw, ph, pd, unit);
	result = getImageID();
	// tidy up: close everything but the source and the result
	ids = newArray(nImages);
	for (i = 1; i <= nImages; i++) {
		selectImage(i);
		ids[i - 1] = getImageID();
	}
	for (i = 0; i < ids.length; i++) {
		if (ids[i] != result && ids[i] != source) {
			selectImage(ids[i]);
			close();
		}
	}
	selectImage(result);
	resetMinAndMax();
	return result;
}
