function net = cifar_style_init(varargin)
% A cnn_cifar_init-like file: a layer kept in a variable, field assignments after the
% struct, learning-rate schedules, normalization.imageSize and class names.
opts.networkType = 'simplenn' ;
opts = vl_argparse(opts, varargin) ;
randn('state', 7) ;
lr = [.1 2] ;
sc = 0.01 ;
w = sc*2 ;   % a variable built from another one

net.layers = {} ;
net.layers{end+1} = struct('type', 'conv', ...
                           'weights', {{w*randn(5,5,3,32, 'single'), zeros(1, 32, 'single')}}, ...
                           'learningRate', lr, ...
                           'stride', 1, ...
                           'pad', 2) ;
net.layers{end+1} = struct('type', 'pool', 'method', 'max', 'pool', [3 3], ...
                           'stride', 2, 'pad', [0 1 0 1]) ;   % Emulate caffe
net.layers{end+1} = struct('type', 'relu') ;
l = struct('type', 'conv', 'weights', {{0.05*randn(8,8,32,10, 'single'), []}}) ;
l.stride = 1 ;
net.layers{end+1} = l ;
net.layers{4}.pad = 0 ;
net.layers{end+1} = struct('type', 'softmaxloss') ;

net.meta.normalization.imageSize = [16, 16, 3] ;
net.meta.classes.name = {'airplane', 'automobile', 'bird', 'cat', 'deer', ...
                         'dog', 'frog', 'horse', 'ship', 'truck'} ;
net.meta.trainOpts.learningRate = [0.05*ones(1,3) 0.005*ones(1,2)] ;
net.meta.trainOpts.numEpochs = numel(net.meta.trainOpts.learningRate) ;
net.meta.trainOpts.batchSize = 100 ;
net.meta.trainOpts.weightDecay = 0.0001 ;
net.meta.trainOpts.gpus = [] ;
